"""Safety: site limits, the governor every stimulator command passes, the dose ledger.

    load_site(path) / loads_site(text)            -> Site, or SiteError (FILE:LINE:COL per problem)
    check_request(site, device, params, kind=...) -> [Violation]  (load-time check of worst-case requests)
    DoseLedger(path, tz=site.tzinfo)              -> the on-disk dose record (append-only, fsync'ed)
    Governor(site, ledger, session_id)            -> request(StimRequest) -> Verdict; arm/disarm/estop;
                                                     inhibit(source, reason)/clear(source);
                                                     record_delivered(device, report) when a train ended
"""

from controller.safety.commands import Inhibition, StimRequest, Verdict
from controller.safety.dose import Totals
from controller.safety.governor import Governor
from controller.safety.ledger import DoseEntry, DoseLedger, LedgerError
from controller.safety.limits import Violation, check_request
from controller.safety.site import DeviceConfig, DeviceLimits, Site, SiteError, load_site, loads_site
from controller.safety.site_schema import json_schema

__all__ = [
    "DeviceConfig", "DeviceLimits", "DoseEntry", "DoseLedger", "Governor", "Inhibition", "LedgerError", "Site",
    "SiteError", "StimRequest", "Totals", "Verdict", "Violation", "check_request", "json_schema", "load_site",
    "loads_site",
]

"""Session recording: the session folder, the event journal and the XDF recording."""

from controller.recording.journal import Journal, JournalError, TruncatedJournalWarning, read_journal
from controller.recording.session import SessionFolder
from controller.recording.xdf import StreamsNotFoundError, XdfRecorder, XdfRecorderError

__all__ = [
    "Journal",
    "JournalError",
    "SessionFolder",
    "StreamsNotFoundError",
    "TruncatedJournalWarning",
    "XdfRecorder",
    "XdfRecorderError",
    "read_journal",
]

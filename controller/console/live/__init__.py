"""The console's live view of an EEG/stimulation session: Qt-free models fed with arrays, thin pyqtgraph widgets.

``LivePage`` composes the signal view (filtered, stacked, decimated traces), the spectrum with the protocol's
bands, the feature traces with thresholds/blocks/rewards, the timeline and the stimulation panel. The console
pulls LSL and polls the status and feeds the page; its frame timer calls ``LivePage.refresh()``.
"""

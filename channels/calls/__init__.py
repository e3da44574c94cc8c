"""The call center (1500630) as a channel: its call logs parsed into ``CallRecord``s and
tailed from disk with a position that survives rotation, truncation and restarts.

Modules: ``records`` (CallRecord, to_message), ``cdr_csv`` (Asterisk Master.csv),
``queue_log`` (Asterisk queue_log, folded per call), ``jsonl`` (JSON-lines export),
``tailer`` (the file tailer, a hub ``Poller``).
"""

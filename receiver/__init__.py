"""The webhook receiver: authenticate → validate → store in the inbox → announce to Prefect."""

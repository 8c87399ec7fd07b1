"""The deadline watch: reminders, escalation, digests, and its chat commands."""

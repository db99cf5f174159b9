"""Backups of the embedded database with pgBackRest: schedule, restore and the restore drill."""

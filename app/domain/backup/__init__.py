"""Backups of a whole instance (``packyard backup create|restore``): the database as
portable JSON lines, the package files beside it, and a manifest that says what is there."""

"""Storage: the saver (the only code that talks to the database), its SQL, and opening it."""

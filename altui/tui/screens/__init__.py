"""The dashboard's screens: the main screen, a run's view and the help."""

"""Reports, claims, figures, export from the store; imports only altui.store and altui.al's catalog/probes helpers."""

"""The composition root: settings, AWS adapters, incident store, remediation, watcher, CLI."""

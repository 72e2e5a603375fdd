"""Pure root-cause layer: incident features, the classifier seam, the playbook and the report."""

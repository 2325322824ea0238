"""Operating notiflow: failed-job alerts and the dead-letter table."""

"""GDPR data export and deletion: requests, the jobs and the download link."""

"""GDPR data export and deletion (spec 003 §8.5, §8.6): requests, the jobs and the download link."""

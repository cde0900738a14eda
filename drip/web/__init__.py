"""The patient-facing web side: signup, confirmation, unsubscribe, preferences."""

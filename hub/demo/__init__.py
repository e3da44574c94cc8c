"""Demo mode: a local fake Twilio and a citizen simulator, so a newcomer sees the hub work."""

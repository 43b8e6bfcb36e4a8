"""The live engine: pollers, their schedule and reads, the app-wide pause, fan-out, accounts."""

"""The case desk: a case from filing to rating, its lists, corrections and the chat that drives it."""

"""A stand-in for the Kommo API, following its documentation: the server (API v4 and OAuth),
its answers' shapes, its writes, and the seeded demo account. Local stack and tests only."""

"""The test integration's Kommo secrets and addresses, shared by the fixtures and the tests."""

TEST_SECRET = "test-client-secret-0123456789abcdef"
TEST_REDIRECT_URI = "https://mailer.test.example/oauth/callback"
TEST_AUDIENCE = "https://mailer.test.example"

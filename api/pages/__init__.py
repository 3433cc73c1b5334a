"""The browser side: sign-in with API tokens, and pages over the data the JSON API returns."""

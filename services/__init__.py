"""The platform's services: gateway, auth, inference, reports."""

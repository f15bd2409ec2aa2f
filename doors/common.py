"""Plumbing every API door shares."""

from rest_framework.negotiation import DefaultContentNegotiation


class IgnoreAcceptHeader(DefaultContentNegotiation):
    """The answer is a file or a JSON error whatever the client accepts.

    Bodies are still parsed by their Content-Type.
    """

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type

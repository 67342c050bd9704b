"""One function per page: it computes everything the page shows (through the same RPCs as the
JSON API) and the template only lays it out."""

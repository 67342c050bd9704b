"""The browser explorer served by `spd serve` beside gRPC: the HTTP ingress, the JSON API, and
one view per page (templates/ render what the views compute; static/ is our own CSS and JS)."""

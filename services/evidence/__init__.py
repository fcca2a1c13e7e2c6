"""Trust zones of the command stream and the evidence value-creating commands rest on."""

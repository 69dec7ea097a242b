"""qx-dsr: data-subject requests under Korea's Personal Information Protection Act."""

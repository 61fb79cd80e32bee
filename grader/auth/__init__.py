"""Who is calling: API tokens and sessions (`identity`), what they may see (`permissions`), login pages."""

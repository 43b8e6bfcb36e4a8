"""The SVG cards and what they are drawn from: options, themes, text, cover art, a render cache."""

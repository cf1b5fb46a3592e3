"""Row 7 of the core: public web pages ({web:N}), an email's web version ({weblink}) and its
forms ({formlink}); see docs/pages.md.
"""

"""The messages of the data flow: the published state readers see, the commands
workers and the pool post to the writer, and the events listeners get (with their
delivery). May import the leaves (``_base``) and ``_config``; nothing above.

Channels appear here as a type parameter (``C``): the channel type lives above.
"""

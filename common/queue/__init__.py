"""The queue between synchro workers (publishers) and writer workers (consumers).

Two implementations behind one small interface (``base``): Redis streams with a consumer group for
the fleet (``redis_streams``), and an in-process queue for the embedded all-in-one mode
(``memory``). ``open_queue(url)`` picks one from the settings' queue URL.
"""

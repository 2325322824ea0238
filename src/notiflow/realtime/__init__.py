"""Real-time push: a Pusher Channels (protocol 7) server that pusher-js and Laravel Echo use."""

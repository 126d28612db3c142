"""The local API Gateway WebSocket runtime: runs any Python WebSocket Lambda app on one machine.

``spec`` describes an API (routes to functions), ``template`` reads one from a SAM or
CloudFormation template, ``core`` is the emulation without I/O (route selection, event building,
limits, error replies), ``workers`` runs functions in warm processes like Lambda execution
environments, ``management`` is the @connections HTTP API and ``server`` ties them to sockets.
"""

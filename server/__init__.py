"""The live service (``vn3d serve``): aiortc media, websockets signalling. app.py holds
what sessions share and the signalling loop; config.py, protocol.py, session.py,
peer.py, routes.py, targets.py, uploads.py, ice.py and stamps.py one job each."""

#!/usr/bin/python3
"""An HL7 v2 MLLP receiver built on Debian's python3-hl7 (0.4.5): a peer we did not write.

It is the asyncio server from python-hl7's documentation: read a message, acknowledge it with
python-hl7's own create_ack(). It reports on stdout, one JSON object per line, what python-hl7
parsed (segment names, field counts, MSH-10, NTE-3 after python-hl7's unescape), so tests can
check that escaped chat text comes back intact through an independent parser.

    hl7-python-peer.py [--encoding ascii|utf-8] [--ack AA|AE|AR]

python-hl7 decodes ASCII unless told otherwise; a message it cannot decode raises
UnicodeDecodeError in readmessage() and gets no ACK (reported as a decode_error event).
"""
import argparse
import asyncio
import json
import sys

import hl7
from hl7.mllp import start_hl7_server


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def segment_values(msg, name, field):
    out = []
    for seg in msg:
        if str(seg[0]) == name and len(seg) > field:
            out.append(msg.unescape(str(seg[field])))
    return out


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--encoding", default=None)
    parser.add_argument("--ack", default="AA")
    args = parser.parse_args()

    async def handle(reader, writer):
        try:
            while not writer.is_closing():
                try:
                    msg = await reader.readmessage()
                except UnicodeDecodeError as err:
                    emit({"event": "decode_error", "encoding": reader.encoding, "reason": err.reason})
                    continue
                msh = msg.segment("MSH")
                emit({
                    "event": "message",
                    "control_id": str(msh[10]),
                    "message_type": str(msh[9]),
                    "charset": str(msh[18]) if len(msh) > 18 else "",
                    "segments": [str(s[0]) for s in msg],
                    "field_counts": [len(s) - 1 for s in msg],
                    "nte_3": segment_values(msg, "NTE", 3),
                })
                writer.writemessage(msg.create_ack(ack_code=args.ack))
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            if not writer.is_closing():
                writer.close()

    server = await start_hl7_server(handle, "127.0.0.1", 0, encoding=args.encoding)
    emit({"event": "ready", "port": server.sockets[0].getsockname()[1], "encoding": args.encoding or "ascii (default)"})
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass

# Idle TCP connections on which the server speaks first, after a pause (run
# by lb_tests::flood_scenario::SpeaksFirst).
#
#   speaks_first.py server PORT NAME TRIGGER LIMIT SIZE
#     in a backend's namespace: accepts connections on PORT; once the
#     trigger file exists, sends on each "NAME\n" and SIZE bytes of the
#     pattern below, then closes it. Ends after LIMIT seconds.
#   speaks_first.py client VIP PORT COUNT TRIGGER LIMIT SIZE
#     in the client's namespace: opens COUNT connections to VIP:PORT,
#     prints "ready", then reads each until it closes (LIMIT seconds in
#     all once the trigger file exists) and prints one JSON line: per
#     connection the backend that spoke and whether every byte came, or
#     the error (a reset, a timeout).
import json, os, socket, sys, threading, time


def pattern(size):
    out, x = bytearray(), 0x2545F491
    while len(out) < size:
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out += x.to_bytes(4, "little")
    return bytes(out[:size])


def wait_for(trigger, limit):
    deadline = time.time() + limit
    while not os.path.exists(trigger) and time.time() < deadline:
        time.sleep(0.05)


def server(port, name, trigger, limit, size):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(1024)
    listener.settimeout(0.2)
    payload = name.encode() + b"\n" + pattern(size)
    deadline = time.time() + limit

    def speak(conn):
        try:
            conn.settimeout(limit)
            wait_for(trigger, max(0.0, deadline - time.time()))
            conn.sendall(payload)
        except OSError:
            pass
        finally:
            conn.close()

    while time.time() < deadline:
        try:
            conn, _ = listener.accept()
        except socket.timeout:
            continue
        threading.Thread(target=speak, args=(conn,), daemon=True).start()


def client(vip, port, count, trigger, limit, size):
    socks = [socket.create_connection((vip, port), timeout=5) for _ in range(count)]
    print("ready", flush=True)
    wait_for(trigger, limit)
    want = pattern(size)
    deadline = time.time() + limit
    results = []
    for s in socks:
        data, error = b"", None
        try:
            while True:
                s.settimeout(max(0.1, deadline - time.time()))
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        except Exception as e:  # a reset, a timeout: the connection broke
            error = repr(e)
        name, _, body = data.partition(b"\n")
        result = {"backend": name.decode(errors="replace"), "bytes": len(body), "whole": body == want}
        if error:
            result["error"] = error
        results.append(result)
        s.close()
    print(json.dumps(results), flush=True)


if sys.argv[1] == "server":
    server(int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5]), int(sys.argv[6]))
else:
    client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], float(sys.argv[6]), int(sys.argv[7]))

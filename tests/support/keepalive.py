# Idle keep-alive HTTP/1.1 connections through the VIP (run in the client
# namespace by lb_tests::flow_pair::Idle): opens N connections, asks GET / on each,
# prints "ready", waits until the trigger file exists (bounded), asks again
# on the same connections and prints one JSON line: per connection the two
# answers, or the error (a reset, a closed connection).
import json, os, socket, sys, time

vip, count, trigger, limit = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])


def get(sock):
    sock.sendall(b"GET / HTTP/1.1\r\nHost: vip\r\nConnection: keep-alive\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed by the peer")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed inside the body")
        body += chunk
    return body.decode().strip()


socks, results = [], []
for _ in range(count):
    s = socket.create_connection((vip, 80), timeout=5)
    socks.append(s)
    results.append({"first": get(s)})
print("ready", flush=True)
deadline = time.time() + limit
while not os.path.exists(trigger) and time.time() < deadline:
    time.sleep(0.05)
for s, r in zip(socks, results):
    try:
        r["second"] = get(s)
    except Exception as e:  # a reset, a timeout: the connection broke
        r["error"] = repr(e)
print(json.dumps(results), flush=True)

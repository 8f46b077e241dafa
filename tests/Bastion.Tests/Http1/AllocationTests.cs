using System.Net.Sockets;
using System.Text;
using Bastion.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Bastion.Tests.Http1;

/// <summary>
/// What one request costs the engine in allocated bytes, on keep-alive connections through the reverse proxy with
/// the benchmark's kind of policy and the access log on: an allocating design is what puts a gateway at half
/// nginx's speed and at 150 MB of RSS (issue 14). The client and origin allocate nothing in this process (raw
/// blocking socket, reused buffer; nginx outside), so the process-wide count is the gateway's.
/// </summary>
[Collection(nameof(AllocationTests))]
[CollectionDefinition(nameof(AllocationTests), DisableParallelization = true)]
public sealed class AllocationTests(ITestOutputHelper output)
{
    /// <summary>
    /// Generous but real: the engine allocated 2.8-3.1 KB per request before its log record, async boxes and header
    /// strings were reused (issue 14), 0.7-1.0 KB after, ~0.5 KB since the request path's async methods take their
    /// boxes from per-method pools (PooledBuilder) and the socket operations are the connection's own, ~100 B since
    /// a connection that repeats its target and Host reuses their canonical strings (CanonicalTarget) and the epoll
    /// engine serves plain sockets (this test alone). The count is process-wide, and in the whole suite other tests'
    /// leftovers (timers, servers) add to it. A per-request object graph, unpooled async boxes or the canonical
    /// target's strings made again per request trips it.
    /// </summary>
    const double MaxBytesPerRequest = 600;

    [Fact]
    public async Task A_keep_alive_request_allocates_a_few_hundred_bytes_at_most()
    {
        await using var origin = await NginxOrigin.StartAsync();
        await using var gw = await TestGateway.StartAsync($$"""
            listeners:
              - name: site
                type: http-reverse
                listen: 127.0.0.1:0
                policy: site-in
                routes:
                  - { path: "/api/{**rest}", upstream: web }
                  - { path: "/{**rest}", upstream: web }
            upstreams:
              web:
                targets: [{{origin.Url}}]
            policies:
              site-in:
                default: deny
                rules:
                  - deny: { source: [203.0.113.0/24, 198.51.100.0/24] }
                  - deny: { method: [TRACE, CONNECT] }
                  - deny: { path: ["/**/.git/**", "/**/.env"] }
                  - deny: { path: ["/**/*.php", "/**/*.cgi"] }
                  - deny: { header: { User-Agent: ["~(?i)(sqlmap|nikto)"] } }
                  - deny: { url: "~(?i)(union(\\s|%20|\\+)+select|<script)" }
                  - allow: { method: [GET, HEAD], path: "/**" }
            """);
        int port = gw.Port("site");
        const int connections = 8, warm = 3000, measured = 12000;
        var clients = new KeepAliveClient[connections];
        for (int i = 0; i < connections; i++) clients[i] = new KeepAliveClient(port);
        try
        {
            // Warm-up: JIT, tiering, pools, the log writer's buffer.
            await Task.Run(() => Drive(clients, warm));
            long before = GC.GetTotalAllocatedBytes(precise: true);
            await Task.Run(() => Drive(clients, measured));
            long allocated = GC.GetTotalAllocatedBytes(precise: true) - before;
            double perRequest = (double)allocated / measured;
            output.WriteLine($"allocated {allocated} bytes for {measured} requests: {perRequest:0} B/request");
            Assert.True(perRequest < MaxBytesPerRequest, $"{perRequest:0} bytes allocated per request (bound {MaxBytesPerRequest})");
        }
        finally
        {
            foreach (var c in clients) c.Dispose();
        }
        // Every request was answered by the origin through the policy (the last rule allows it).
        await gw.WaitForLogAsync(l => l.Str("rule") == "site-in#7" && l.Num("status") == 200);
    }

    /// <summary>Every connection on its own thread, one request at a time each: as many requests in flight as connections.</summary>
    static void Drive(KeepAliveClient[] clients, int requests)
    {
        var threads = new Thread[clients.Length];
        for (int i = 0; i < clients.Length; i++)
        {
            var c = clients[i];
            threads[i] = new Thread(() =>
            {
                for (int j = 0; j < requests / clients.Length; j++) c.Get();
            });
            threads[i].Start();
        }
        foreach (var t in threads) t.Join();
    }

    /// <summary>A blocking keep-alive client that allocates nothing per request.</summary>
    sealed class KeepAliveClient : IDisposable
    {
        readonly Socket _s;
        readonly byte[] _request;
        readonly byte[] _buf = new byte[64 * 1024];

        public KeepAliveClient(int port)
        {
            _s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true, ReceiveTimeout = 10_000 };
            _s.Connect(System.Net.IPAddress.Loopback, port);
            _request = Encoding.ASCII.GetBytes($"GET /100b HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: alloc-test\r\n\r\n");
        }

        /// <summary>Sends one request and reads its response (Content-Length framed), asserting a 200.</summary>
        public void Get()
        {
            _s.Send(_request);
            int have = 0, headEnd = -1;
            long total = -1;
            while (total < 0 || have < total)
            {
                int n = _s.Receive(_buf, have, _buf.Length - have, SocketFlags.None);
                if (n == 0) throw new IOException("gateway closed the connection");
                have += n;
                if (headEnd < 0 && (headEnd = _buf.AsSpan(0, have).IndexOf("\r\n\r\n"u8)) >= 0)
                {
                    var head = _buf.AsSpan(0, headEnd);
                    if (!head.StartsWith("HTTP/1.1 200 "u8)) throw new IOException("not a 200: " + Encoding.Latin1.GetString(head));
                    int cl = head.IndexOf("\r\nContent-Length: "u8);
                    if (cl < 0) throw new IOException("no Content-Length");
                    var digits = head[(cl + 18)..];
                    long len = 0;
                    for (int i = 0; i < digits.Length && digits[i] is >= (byte)'0' and <= (byte)'9'; i++) len = len * 10 + digits[i] - '0';
                    total = headEnd + 4 + len;
                }
            }
            if (have != total) throw new IOException("bytes after the response");
        }

        public void Dispose() => _s.Dispose();
    }
}

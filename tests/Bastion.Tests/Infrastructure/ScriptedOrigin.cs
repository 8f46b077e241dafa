using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Bastion.Tests.Infrastructure;

/// <summary>
/// A misbehaving (or exactly behaving) origin: a TCP server on 127.0.0.1:0 (or another loopback address) that runs a script per connection,
/// writing exactly the bytes under test. The script reads requests with <see cref="Conn.ReadRequestAsync"/> and
/// answers with <see cref="Conn.WriteAsync(string)"/>; everything each connection received is kept.
/// </summary>
public sealed class ScriptedOrigin : IAsyncDisposable
{
    readonly TcpListener _listener;
    readonly Func<Conn, Task> _script;
    readonly CancellationTokenSource _stop = new();
    readonly List<Task> _running = [];
    readonly List<Conn> _conns = [];
    readonly Task _accept;
    int _connections;

    public int Port { get; }
    public IPAddress Address { get; }
    public string Url => $"http://{Address}:{Port}";
    public int Connections => Volatile.Read(ref _connections);
    /// <summary>Every request head read by scripts, in order.</summary>
    public List<string> Requests { get; } = [];

    ScriptedOrigin(Func<Conn, Task> script, string address)
    {
        _script = script;
        Address = IPAddress.Parse(address);
        _listener = new TcpListener(Address, 0);
        _listener.Start(512);
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _accept = AcceptLoop();
    }

    /// <summary>Starts the server; <paramref name="script"/> runs once per accepted connection.</summary>
    public static ScriptedOrigin Start(Func<Conn, Task> script, string address = "127.0.0.1") => new(script, address);

    /// <summary>Answers every request on a connection with the same bytes (keep-alive unless the bytes close).</summary>
    public static ScriptedOrigin Answering(string response, bool closeAfter = false, string address = "127.0.0.1") => Start(async c =>
    {
        while (await c.ReadRequestAsync() is not null)
        {
            await c.WriteAsync(response);
            if (closeAfter) return;
        }
    }, address);

    async Task AcceptLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket s;
            try { s = await _listener.AcceptSocketAsync(_stop.Token); }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException) { return; }
            Interlocked.Increment(ref _connections);
            var conn = new Conn(this, s);
            lock (_running) _conns.Add(conn);
            lock (_running) _running.Add(Task.Run(async () =>
            {
                try { await _script(conn); }
                catch (Exception e) when (e is SocketException or IOException or ObjectDisposedException or OperationCanceledException) { }
                finally { conn.Dispose(); }
            }));
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stop.Cancel();
        _listener.Stop();
        await _accept;
        Task[] all;
        lock (_running)
        {
            all = [.. _running];
            foreach (var c in _conns) c.Dispose();
        }
        // The connections' handlers end once their sockets are disposed; a stuck one must not hang the test run.
        try { await Task.WhenAll(all).WaitAsync(TimeSpan.FromSeconds(5)); }
        catch (TimeoutException) { }
        catch (Exception) when (all.All(t => t.IsCompleted)) { }
    }

    public sealed class Conn(ScriptedOrigin owner, Socket socket) : IDisposable
    {
        readonly List<byte> _pending = [];
        public Socket Socket => socket;
        /// <summary>Everything received on this connection.</summary>
        public List<byte> Received { get; } = [];

        /// <summary>
        /// Reads one request: the head, then a Content-Length or chunked body. Returns the head (Latin-1), or null
        /// when the client closed first.
        /// </summary>
        public async Task<string?> ReadRequestAsync(TimeSpan? timeout = null)
        {
            using var cts = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(30));
            int end;
            while ((end = IndexOf("\r\n\r\n"u8)) < 0)
                if (!await FillAsync(cts.Token)) return null;
            var head = Encoding.Latin1.GetString([.. _pending.GetRange(0, end + 4)]);
            _pending.RemoveRange(0, end + 4);
            lock (owner.Requests) owner.Requests.Add(head);
            var cl = Header(head, "Content-Length");
            if (cl is not null)
            {
                long n = long.Parse(cl, System.Globalization.CultureInfo.InvariantCulture);
                await SkipAsync(n, cts.Token);
            }
            else if (Header(head, "Transfer-Encoding") is not null)
            {
                while (true)
                {
                    int eol;
                    while ((eol = IndexOf("\r\n"u8)) < 0) if (!await FillAsync(cts.Token)) return head;
                    var line = Encoding.Latin1.GetString([.. _pending.GetRange(0, eol)]);
                    _pending.RemoveRange(0, eol + 2);
                    long size = Convert.ToInt64(line.Split(';')[0], 16);
                    await SkipAsync(size + 2, cts.Token);
                    if (size == 0) break;
                }
            }
            return head;
        }

        /// <summary>Body bytes of the last request are not kept; this counts them.</summary>
        public long BodyBytes { get; private set; }

        async Task SkipAsync(long n, CancellationToken ct)
        {
            while (n > 0)
            {
                if (_pending.Count == 0 && !await FillAsync(ct)) return;
                int take = (int)Math.Min(n, _pending.Count);
                _pending.RemoveRange(0, take);
                n -= take;
                BodyBytes += take;
            }
        }

        static string? Header(string head, string name)
        {
            foreach (var line in head.Split("\r\n"))
                if (line.StartsWith(name + ":", StringComparison.OrdinalIgnoreCase)) return line[(name.Length + 1)..].Trim();
            return null;
        }

        int IndexOf(ReadOnlySpan<byte> what)
        {
            var arr = _pending.ToArray();
            return arr.AsSpan().IndexOf(what);
        }

        async Task<bool> FillAsync(CancellationToken ct)
        {
            var buf = new byte[64 * 1024];
            int n;
            try { n = await socket.ReceiveAsync(buf, SocketFlags.None, ct); }
            catch (SocketException) { return false; }
            if (n == 0) return false;
            _pending.AddRange(buf.AsSpan(0, n).ToArray());
            if (Received.Count < 1 << 20) Received.AddRange(buf.AsSpan(0, Math.Min(n, 1 << 20)).ToArray());
            return true;
        }

        public Task WriteAsync(string bytes) => WriteAsync(Encoding.Latin1.GetBytes(bytes));

        public async Task WriteAsync(byte[] bytes)
        {
            try { await socket.SendAsync(bytes, SocketFlags.None); }
            catch (SocketException) { }
        }

        /// <summary>Closes with a FIN (after what was written).</summary>
        public void Close()
        {
            try { socket.Shutdown(SocketShutdown.Both); } catch (SocketException) { }
            socket.Close();
        }

        /// <summary>Closes with a reset.</summary>
        public void Reset()
        {
            try { socket.Close(0); } catch (SocketException) { }
        }

        public void Dispose()
        {
            try { socket.Dispose(); } catch (ObjectDisposedException) { }
        }
    }
}

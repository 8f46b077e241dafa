using System.Net;
using System.Net.Sockets;
using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Observability;

namespace Bastion.Hosting;

/// <summary>
/// The accept loop shared by every socket-level gateway (http-proxy, socks5, tcp): binds, enforces the
/// connection limit, registers each connection for the admin API and draining, then hands the socket to the
/// protocol's <see cref="HandleAsync"/>. Protocol code never sees the listening socket.
/// </summary>
public abstract class StreamListener(ListenerContext ctx) : IGatewayListener
{
    protected ListenerContext Ctx { get; } = ctx;
    Socket? _listen;
    Task? _acceptLoop;
    readonly CancellationTokenSource _stopAccepting = new();
    int _active;

    public string Name => Ctx.Name;
    public ListenerType Type => Ctx.Type;
    public IPEndPoint? BoundEndPoint { get; private set; }
    public bool IsRunning => _listen is not null && !_stopAccepting.IsCancellationRequested;
    public int Active => Volatile.Read(ref _active);

    public virtual Task StartAsync(CancellationToken ct)
    {
        var cfg = Ctx.Config;
        var ep = cfg.Listen.ToIPEndPoint()
            ?? new IPEndPoint(Dns.GetHostAddresses(cfg.Listen.Host).First(), cfg.Listen.Port);
        var s = new Socket(ep.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            ListenSockets.AllowRebind(s);
            if (ep.AddressFamily == AddressFamily.InterNetworkV6 && ep.Address.Equals(IPAddress.IPv6Any)) s.DualMode = true;
            s.Bind(ep);
            s.Listen(4096);
        }
        catch
        {
            s.Dispose();
            throw;
        }
        _listen = s;
        BoundEndPoint = (IPEndPoint)s.LocalEndPoint!;
        Ctx.Remember(cfg);
        _acceptLoop = AcceptLoop();
        return Task.CompletedTask;
    }

    async Task AcceptLoop()
    {
        var token = _stopAccepting.Token;
        while (!token.IsCancellationRequested)
        {
            Socket client;
            try { client = await _listen!.AcceptAsync(token).ConfigureAwait(false); }
            catch (OperationCanceledException) { break; }
            catch (ObjectDisposedException) { break; }
            catch (SocketException) { continue; }
            _ = Serve(client);
        }
    }

    async Task Serve(Socket socket)
    {
        var limits = Ctx.Config.Limits;
        if (Interlocked.Increment(ref _active) > limits.MaxConnections)
        {
            Interlocked.Decrement(ref _active);
            RejectOverLimit(socket);
            return;
        }
        socket.NoDelay = true;
        var conn = new ClientConnection
        {
            Listener = Name,
            Type = Ctx.TypeName,
            Client = (IPEndPoint)socket.RemoteEndPoint!,
            Local = (IPEndPoint)socket.LocalEndPoint!,
            Transport = Transport.FromSocket(socket),
            Draining = _stopAccepting.Token,
        };
        Ctx.Connections.Add(conn);
        Ctx.Metrics.ConnectionOpened(Name);
        try
        {
            await using var reg = _draining.Token.Register(static c => ((ClientConnection)c!).Abort(), conn).ConfigureAwait(false);
            if (Ctx.TrustsProxyProtocolFrom(conn.Client.Address) && !await AcceptProxyHeaderAsync(conn, socket).ConfigureAwait(false))
                return;
            await HandleAsync(conn).ConfigureAwait(false);
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // The peer went away or the connection was aborted: nothing to answer.
        }
        catch (Exception e)
        {
            // A bug in one connection must never take down the gateway or other connections.
            Console.Error.WriteLine($"bastion: listener {Name}: connection {conn.Id} failed: {e}");
        }
        finally
        {
            Ctx.Connections.Remove(conn);
            Ctx.Metrics.ConnectionClosed(Name);
            try { socket.Dispose(); } catch (ObjectDisposedException) { }
            Interlocked.Decrement(ref _active);
        }
    }

    /// <summary>
    /// A trusted front must open with a PROXY v1/v2 header; the client it names replaces the peer for policy and
    /// logs (LOCAL/UNKNOWN keep the peer). Anything else is logged and the connection closed.
    /// </summary>
    async Task<bool> AcceptProxyHeaderAsync(ClientConnection conn, Socket socket)
    {
        var timeout = Ctx.Config.Limits.HeaderTimeout;
        var (header, error) = await ProxyProtocol.ReadAsync(socket, timeout, conn.Aborted).ConfigureAwait(false);
        if (header is null)
        {
            Ctx.RecordRefused(conn.ClientText, "accept_proxy_protocol", error, conn.Id, conn.Age.TotalMilliseconds);
            try { socket.Close(0); } catch (ObjectDisposedException) { }
            return false;
        }
        conn.ProxyHeader = header;
        if (header.Source is { } src) conn.Client = src;
        if (header.VerifiedClientCn is { } cn) conn.User ??= cn;
        return true;
    }

    /// <summary>Over the connection limit: a protocol may answer (HTTP 503); the default just closes.</summary>
    protected virtual void RejectOverLimit(Socket socket)
    {
        Ctx.RecordRefused(socket.RemoteEndPoint?.ToString(), "limits.max_connections", "connection limit reached");
        try { socket.Close(1); } catch (ObjectDisposedException) { }
    }

    /// <summary>Serves one client connection until it is done. Exceptions from a vanished peer are expected.</summary>
    protected abstract Task HandleAsync(ClientConnection conn);

    readonly CancellationTokenSource _draining = new();

    public async Task StopAsync(CancellationToken drain)
    {
        _stopAccepting.Cancel();
        try { _listen?.Dispose(); } catch (ObjectDisposedException) { }
        if (_acceptLoop is not null) await _acceptLoop.ConfigureAwait(false);
        try
        {
            while (Active > 0 && !drain.IsCancellationRequested)
                await Task.Delay(50, drain).ConfigureAwait(false);
        }
        catch (OperationCanceledException) { }
        _draining.Cancel();
        var deadline = DateTime.UtcNow.AddSeconds(2);
        while (Active > 0 && DateTime.UtcNow < deadline) await Task.Delay(20).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.Zero);
        await StopAsync(cts.Token).ConfigureAwait(false);
        GC.SuppressFinalize(this);
    }
}

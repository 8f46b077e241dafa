using System.Net;
using System.Net.Sockets;
using Bastion.Configuration;
using Bastion.Gateway;

namespace Bastion.Hosting;

/// <summary>
/// The accept loop shared by every socket-level gateway (http-proxy, socks5, tcp): binds, accepts, and takes each
/// connection through the shared <see cref="Gateway.Admission"/> (limit, registry, PROXY header, closed line)
/// before handing it to the protocol's <see cref="HandleAsync"/>. Protocol code never sees the listening socket.
/// </summary>
public abstract class StreamListener(ListenerContext ctx) : IGatewayListener
{
    protected ListenerContext Ctx { get; } = ctx;
    protected Admission Admission { get; } = new(ctx);
    Socket? _listen;
    Task? _acceptLoop;
    readonly CancellationTokenSource _stopAccepting = new();

    public string Name => Ctx.Name;
    public ListenerType Type => Ctx.Type;
    public IPEndPoint? BoundEndPoint { get; private set; }
    public bool IsRunning => _listen is not null && !_stopAccepting.IsCancellationRequested;
    public int Active => Admission.Active;

    public virtual Task StartAsync(CancellationToken ct)
    {
        var cfg = Ctx.Config;
        _listen = ListenSockets.Open(ListenSockets.EndPoint(cfg.Listen));
        BoundEndPoint = (IPEndPoint)_listen.LocalEndPoint!;
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

    /// <summary>accept → limit → register → identify (PROXY header) → the protocol → release (the closed line).</summary>
    async Task Serve(Socket socket)
    {
        if (!Admission.TryEnter())
        {
            RejectOverLimit(socket);
            return;
        }
        socket.NoDelay = true;
        var transport = Transport.FromSocket(socket);
        var conn = Admission.Register(transport, (IPEndPoint)socket.RemoteEndPoint!, (IPEndPoint)socket.LocalEndPoint!);
        try
        {
            if (!await Admission.IdentifyAsync(conn).ConfigureAwait(false))
            {
                transport.Abort();
                return;
            }
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
            await transport.DisposeAsync().ConfigureAwait(false);
            Admission.Release(conn);
        }
    }

    /// <summary>Over the connection limit: a protocol may answer first (HTTP 503); then the line is logged and the socket closed.</summary>
    protected virtual void RejectOverLimit(Socket socket)
    {
        Admission.RefuseOverLimit(socket.RemoteEndPoint?.ToString());
        try { socket.Close(1); } catch (ObjectDisposedException) { }
    }

    /// <summary>Serves one client connection until it is done. Exceptions from a vanished peer are expected.</summary>
    protected abstract Task HandleAsync(ClientConnection conn);

    public virtual async Task StopAsync(CancellationToken drain)
    {
        _stopAccepting.Cancel();
        Admission.StopAccepting();
        try { _listen?.Dispose(); } catch (ObjectDisposedException) { }
        if (_acceptLoop is not null) await _acceptLoop.ConfigureAwait(false);
        await Admission.DrainAsync(drain).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.Zero);
        await StopAsync(cts.Token).ConfigureAwait(false);
        GC.SuppressFinalize(this);
    }
}

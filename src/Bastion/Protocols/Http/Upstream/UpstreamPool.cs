using System.Net;
using System.Net.Security;
using System.Runtime.CompilerServices;
using System.Security.Cryptography.X509Certificates;
using System.Net.Sockets;
using System.Security.Authentication;
using Bastion.Gateway;
using Bastion.Protocols.Http.Io;

namespace Bastion.Protocols.Http.Upstream;

/// <summary>How to speak TLS to an upstream: whose certificates to trust.</summary>
public sealed class UpstreamTls(RemoteCertificateValidationCallback? validate = null)
{
    /// <summary>System trust, name checked.</summary>
    public static readonly UpstreamTls System = new();

    public RemoteCertificateValidationCallback? Validate { get; } = validate;

    /// <summary>Checks that say what is wrong (for the error page), and the chain policy SslStream builds with.</summary>
    public UpstreamTls(Func<string, X509Certificate2?, X509Chain?, SslPolicyErrors, string?> check, Func<X509ChainPolicy>? chainPolicy)
        : this()
    {
        _check = check;
        _chainPolicy = chainPolicy;
    }

    readonly Func<string, X509Certificate2?, X509Chain?, SslPolicyErrors, string?>? _check;
    readonly Func<X509ChainPolicy>? _chainPolicy;

    internal SslClientAuthenticationOptions Options(string host) => Options(host, null);

    /// <summary>The options for one handshake; a refused certificate's problem lands in <paramref name="problem"/>.</summary>
    internal SslClientAuthenticationOptions Options(string host, StrongBox<string?>? problem)
    {
        var name = host.Length > 0 && host[0] == '[' ? host[1..^1] : host;
        var check = _check;
        return new()
        {
            TargetHost = name,
            ApplicationProtocols = [SslApplicationProtocol.Http11],
            RemoteCertificateValidationCallback = check is null ? Validate : (_, cert, chain, errors) =>
            {
                var why = check(name, cert as X509Certificate2, chain, errors);
                if (problem is not null) problem.Value = why;
                return why is null;
            },
            CertificateChainPolicy = _chainPolicy?.Invoke(),
            EnabledSslProtocols = SslProtocols.None,
        };
    }
}

/// <summary>Why no connection to the upstream could be made.</summary>
public readonly record struct ConnectOutcome(UpstreamConnection? Connection, string? Error, bool TimedOut)
{
    public bool Ok => Connection is not null;
}

/// <summary>
/// Keep-alive connections to one upstream (host, port, plain or TLS). Idle connections wait in a stack (the most
/// recently used, warmest, goes first) up to a bound and for <see cref="IdleTimeout"/>; a connection idle for a while
/// is checked for a close (or stray bytes) from the server before it is used again.
/// </summary>
/// <param name="addresses">Where to connect (an inspected tunnel's origin: the CONNECT's address); null: resolve <paramref name="host"/>.</param>
public sealed class UpstreamPool(string host, int port, UpstreamTls? tls, TimeSpan connectTimeout, int maxIdle = 512,
    IReadOnlyList<IPAddress>? addresses = null)
{
    public static readonly TimeSpan IdleTimeout = TimeSpan.FromSeconds(55);
    const long CheckAfterIdleMs = 1000;

    readonly Stack<UpstreamConnection> _idle = new();
    volatile bool _retired;
    int _open;
    long _opened;

    public string Host { get; } = host;
    public int Port { get; } = port;
    public UpstreamTls? Tls { get; } = tls;
    public TimeSpan ConnectTimeout { get; set; } = connectTimeout;

    /// <summary>`host:port`, for logs.</summary>
    public string Label => $"{Host}:{Port}";

    /// <summary>Connections open now (idle or in use).</summary>
    public int Open => Volatile.Read(ref _open);

    /// <summary>Connections made since the pool was created (keep-alive reuse keeps this low).</summary>
    public long Opened => Interlocked.Read(ref _opened);

    public int Idle
    {
        get { lock (_idle) return _idle.Count; }
    }

    /// <summary>An idle connection if a good one waits, else a new one. <paramref name="fresh"/>: always a new one.</summary>
    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    public async ValueTask<ConnectOutcome> RentAsync(bool fresh, CancellationToken ct)
    {
        if (!fresh)
        {
            while (TakeIdle() is { } c)
            {
                if (Environment.TickCount64 - c.IdleSince > CheckAfterIdleMs && !StillGood(c))
                {
                    await c.CloseAsync().ConfigureAwait(false);
                    continue;
                }
                c.Reused = true;
                return new ConnectOutcome(c, null, false);
            }
        }
        return await ConnectAsync(ct).ConfigureAwait(false);
    }

    UpstreamConnection? TakeIdle()
    {
        lock (_idle) return _idle.Count > 0 ? _idle.Pop() : null;
    }

    /// <summary>An idle connection must have nothing to read: readable means the server closed it or sent stray bytes.</summary>
    static bool StillGood(UpstreamConnection c)
    {
        try { return c.Peer.Io.Socket is { } s && !s.Poll(0, SelectMode.SelectRead); }
        catch (Exception e) when (e is SocketException or ObjectDisposedException) { return false; }
    }

    async ValueTask<ConnectOutcome> ConnectAsync(CancellationToken ct)
    {
        IReadOnlyList<IPAddress> targets;
        if (addresses is not null) targets = addresses;
        else
        {
            var name = Host.Length > 0 && Host[0] == '[' ? Host[1..^1] : Host;
            var (resolved, dnsError) = await Connector.ResolveAsync(name, ConnectTimeout, ct).ConfigureAwait(false);
            if (resolved.Length == 0)
                return new ConnectOutcome(null, dnsError == SocketError.TimedOut ? $"upstream {Label} failed: resolving {Host} timed out" : $"upstream {Label} failed: cannot resolve {Host}", dnsError == SocketError.TimedOut);
            targets = resolved;
        }
        // TLS runs over .NET's engine (SslStream on a NetworkStream); a plain connection on the gateway's.
        ConnectResult r;
        Duplex? plain = null;
        if (Tls is null) (plain, r) = await Duplex.ConnectAsync(targets, Port, ConnectTimeout, ct).ConfigureAwait(false);
        else r = await Connector.ConnectAsync(targets, Port, ConnectTimeout, ct).ConfigureAwait(false);
        if (!r.Ok)
        {
            var why = r.Error switch
            {
                SocketError.ConnectionRefused => "connection refused",
                SocketError.TimedOut => $"connect timed out after {ConnectTimeout.TotalSeconds:0.#}s",
                SocketError.HostUnreachable or SocketError.NetworkUnreachable => "unreachable",
                _ => r.Message ?? r.Error.ToString(),
            };
            return new ConnectOutcome(null, $"upstream {Label} failed: {why}", r.Error == SocketError.TimedOut);
        }
        var socket = r.Socket!;
        Duplex io;
        if (Tls is null) io = plain!;
        else
        {
            var (tlsIo, failed) = await HandshakeAsync(socket, Tls, ct).ConfigureAwait(false);
            if (tlsIo is null) return failed;
            io = tlsIo;
        }
        Interlocked.Increment(ref _open);
        Interlocked.Increment(ref _opened);
        return new ConnectOutcome(new UpstreamConnection(this, io), null, false);
    }

    /// <summary>
    /// TLS over a connected socket. A method of its own: compiling one loads every type it names, and a gateway with
    /// plain upstreams only must not load the TLS and crypto assemblies.
    /// </summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    async Task<(Duplex? Io, ConnectOutcome Failed)> HandshakeAsync(Socket socket, UpstreamTls tls, CancellationToken ct)
    {
        var ssl = new SslStream(new NetworkStream(socket, ownsSocket: true), leaveInnerStreamOpen: false);
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(ConnectTimeout);
        var problem = new StrongBox<string?>();
        try
        {
            await ssl.AuthenticateAsClientAsync(tls.Options(Host, problem), cts.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (Duplex.IsIoError(e))
        {
            await ssl.DisposeAsync().ConfigureAwait(false);
            var inner = e;
            while (inner.InnerException is not null) inner = inner.InnerException;
            return (null, new ConnectOutcome(null, problem.Value ?? (e is OperationCanceledException && !ct.IsCancellationRequested
                ? $"upstream {Label} failed: TLS handshake timed out"
                : $"upstream {Label} failed: TLS handshake: {inner.Message}"), e is OperationCanceledException));
        }
        return (Duplex.Over(ssl, socket), default);
    }

    /// <summary>Takes a connection opened elsewhere (an inspected tunnel's first, already verified) as an idle one.</summary>
    public void Adopt(Duplex io)
    {
        Interlocked.Increment(ref _open);
        Interlocked.Increment(ref _opened);
        var c = new UpstreamConnection(this, io) { IdleSince = Environment.TickCount64 };
        lock (_idle) _idle.Push(c);
    }

    /// <summary>Puts a connection that finished its exchange cleanly back for the next one (or closes it when the pool is full).</summary>
    public ValueTask ReturnAsync(UpstreamConnection c)
    {
        c.NoDeadline();
        c.Uses++;
        if (c.IsClosed || c.TimedOut || c.Peer.Count > 0) return c.CloseAsync();
        c.IdleSince = Environment.TickCount64;
        lock (_idle)
        {
            if (_idle.Count < maxIdle && !_retired)
            {
                _idle.Push(c);
                return ValueTask.CompletedTask;
            }
        }
        return c.CloseAsync();
    }

    internal void Closed() => Interlocked.Decrement(ref _open);

    /// <summary>No more idle keeping (the pool was dropped or its configuration replaced): idle ones close now, busy ones after use.</summary>
    public ValueTask RetireAsync()
    {
        _retired = true;
        return PruneAsync(all: true);
    }

    /// <summary>Closes connections idle for longer than <see cref="IdleTimeout"/> (or all of them).</summary>
    public async ValueTask PruneAsync(bool all = false)
    {
        List<UpstreamConnection>? stale = null;
        long now = Environment.TickCount64;
        lock (_idle)
        {
            if (_idle.Count == 0) return;
            var keep = _idle.ToArray();   // top first
            _idle.Clear();
            for (int i = keep.Length - 1; i >= 0; i--)
            {
                if (all || now - keep[i].IdleSince > (long)IdleTimeout.TotalMilliseconds) (stale ??= []).Add(keep[i]);
                else _idle.Push(keep[i]);
            }
        }
        if (stale is null) return;
        foreach (var c in stale) await c.CloseAsync().ConfigureAwait(false);
    }
}

using System.Net;
using System.Net.Security;
using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Hosting;
using Bastion.Observability;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Yarp.ReverseProxy.Forwarder;

namespace Bastion.Protocols.HttpReverse;

/// <summary>
/// The reverse proxy (SPEC 3, http-reverse). Each listener is its own Kestrel server, so that reload can start and
/// stop one without touching the others. Kestrel parses HTTP/1.1 and HTTP/2 and terminates TLS (certificate by SNI);
/// Bastion asks the policy, routes and balances (<see cref="ReverseHandler"/>); YARP's <see cref="IHttpForwarder"/>
/// sends the request upstream and streams bodies and upgraded connections both ways.
/// </summary>
public sealed class ReverseProxyListener(ListenerContext ctx) : IGatewayListener
{
    readonly ListenerContext _ctx = ctx;
    WebApplication? _app;
    ReverseHandler? _handler;
    int _active;
    bool _stopped;

    public string Name => _ctx.Name;
    public ListenerType Type => _ctx.Type;
    public IPEndPoint? BoundEndPoint { get; private set; }
    public bool IsRunning => _app is not null && !_stopped;
    public int ActiveConnections => Volatile.Read(ref _active);

    /// <summary>For tests and the admin API: the upstream groups in force and their targets' health.</summary>
    public IReadOnlyDictionary<string, UpstreamGroup> Upstreams => _handler?.State().Groups ?? [];

    public async Task StartAsync(CancellationToken ct)
    {
        var cfg = _ctx.Config;
        var rt = _ctx.Runtime;
        var limits = cfg.Limits;
        var certs = cfg.Tls.IsEmpty ? null : new ServerCertificates(rt.Config, cfg.Tls);
        var ep = cfg.Listen.ToIPEndPoint()
            ?? new IPEndPoint((await Dns.GetHostAddressesAsync(cfg.Listen.Host, ct).ConfigureAwait(false)).First(), cfg.Listen.Port);

        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { ApplicationName = "bastion" });
        builder.Services.AddLogging(b => b.ClearProviders());
        builder.Services.AddHttpForwarder();
        builder.WebHost.UseKestrelCore();
        ListenOptions? bound = null;
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Limits.MaxRequestBodySize = limits.MaxRequestBody > 0 ? limits.MaxRequestBody : null;
            k.Limits.MaxRequestHeadersTotalSize = limits.MaxHeaderSize;
            k.Limits.MaxRequestLineSize = limits.MaxHeaderSize;
            k.Limits.Http2.MaxRequestHeaderFieldSize = Math.Max(4096, limits.MaxHeaderSize);
            k.Limits.KeepAliveTimeout = limits.IdleTimeout;
            k.Limits.RequestHeadersTimeout = limits.HeaderTimeout;
            k.Listen(ep, lo =>
            {
                // h2c is not offered on plain listeners: HTTP/2 comes with TLS and ALPN.
                lo.Protocols = certs is null ? HttpProtocols.Http1 : HttpProtocols.Http1AndHttp2;
                // First on the raw transport, before TLS: connection registry, limit, and the PROXY protocol header.
                lo.Use(next => c => OnConnectionAsync(c, next));
                if (certs is not null)
                {
                    lo.UseHttps(new TlsHandshakeCallbackOptions
                    {
                        HandshakeTimeout = limits.HeaderTimeout,
                        OnConnection = hello => ValueTask.FromResult(new SslServerAuthenticationOptions
                        {
                            ServerCertificateContext = certs.Select(hello.ClientHelloInfo.ServerName),
                            ApplicationProtocols = [SslApplicationProtocol.Http2, SslApplicationProtocol.Http11],
                        }),
                    });
                }
                bound = lo;
            });
        });
        var app = builder.Build();
        var handler = new ReverseHandler(_ctx, app.Services.GetRequiredService<IHttpForwarder>());
        app.Run(handler.HandleAsync);
        await app.StartAsync(ct).ConfigureAwait(false);
        _app = app;
        _handler = handler;
        BoundEndPoint = bound?.IPEndPoint ?? ep;
        _ctx.Remember(cfg);
    }

    async Task OnConnectionAsync(ConnectionContext c, ConnectionDelegate next)
    {
        var cfg = _ctx.Config;
        if (c.RemoteEndPoint is not IPEndPoint peer) { await next(c).ConfigureAwait(false); return; }
        if (Interlocked.Increment(ref _active) > cfg.Limits.MaxConnections)
        {
            Interlocked.Decrement(ref _active);
            _ctx.RecordRefused(peer.ToString(), "limits.max_connections", "connection limit reached");
            c.Abort();
            return;
        }
        var conn = new ClientConnection
        {
            Listener = Name,
            Type = _ctx.TypeName,
            Client = peer,
            Local = c.LocalEndPoint as IPEndPoint,
            Transport = Transport.FromPipe(c.Transport),
        };
        // PROXY protocol (accept_proxy_protocol): a trusted front must open with a v1/v2 header. It precedes TLS and
        // HTTP, so it is read here on the raw transport; setting c.RemoteEndPoint makes Kestrel report the client it
        // names to every request (policy `source`, X-Forwarded-For, logs).
        if (_ctx.TrustsProxyProtocolFrom(peer.Address))
        {
            var (header, error) = await ReadProxyHeaderAsync(c, cfg.Limits.HeaderTimeout, c.ConnectionClosed).ConfigureAwait(false);
            if (header is null)
            {
                Interlocked.Decrement(ref _active);
                _ctx.RecordRefused(peer.ToString(), "accept_proxy_protocol", error, conn.Id, conn.Age.TotalMilliseconds);
                c.Abort();
                return;
            }
            conn.ProxyHeader = header;
            if (header.Source is { } src)
            {
                c.RemoteEndPoint = src;
                conn.Client = src;
            }
            if (header.VerifiedClientCn is { } cn) conn.User ??= cn;
        }
        c.Features.Set(conn);
        _ctx.Connections.Add(conn);
        _ctx.Metrics.ConnectionOpened(Name);
        try
        {
            using var reg = conn.Aborted.Register(static s => ((ConnectionContext)s!).Abort(), c);
            await next(c).ConfigureAwait(false);
        }
        finally
        {
            _ctx.Connections.Remove(conn);
            _ctx.Metrics.ConnectionClosed(Name);
            Interlocked.Decrement(ref _active);
            _ctx.RecordClosed(conn);
        }
    }

    /// <summary>
    /// Takes exactly one PROXY header off the connection's input pipe (nothing past it: what follows is TLS or HTTP
    /// for Kestrel). Null with a reason when the front sent something else, too much, or nothing in time.
    /// </summary>
    static async Task<(ProxyHeader? Header, string? Error)> ReadProxyHeaderAsync(ConnectionContext c, TimeSpan timeout, CancellationToken ct)
    {
        var input = c.Transport.Input;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        try
        {
            while (true)
            {
                var result = await input.ReadAsync(cts.Token).ConfigureAwait(false);
                var buffer = result.Buffer;
                switch (ProxyProtocol.TryParse(buffer, out var header, out var error))
                {
                    case ProxyParseStatus.Parsed:
                        input.AdvanceTo(buffer.GetPosition(header!.Length));
                        return (header, null);
                    case ProxyParseStatus.Malformed:
                        input.AdvanceTo(buffer.Start);
                        return (null, error);
                }
                if (buffer.Length >= ProxyProtocol.DefaultMaxLength)
                {
                    input.AdvanceTo(buffer.Start);
                    return (null, "PROXY header too long");
                }
                if (result.IsCompleted)
                {
                    input.AdvanceTo(buffer.Start);
                    return (null, "connection closed before a PROXY header");
                }
                // Incomplete: keep it all and wait for more.
                input.AdvanceTo(buffer.Start, buffer.End);
            }
        }
        catch (OperationCanceledException)
        {
            return (null, ct.IsCancellationRequested ? "connection closed before a PROXY header" : "no PROXY header in time");
        }
        catch (Exception e) when (e is IOException or ConnectionResetException or ConnectionAbortedException)
        {
            return (null, "connection closed before a PROXY header");
        }
    }

    public async Task StopAsync(CancellationToken drain)
    {
        if (_stopped) return;
        _stopped = true;
        if (_app is { } app)
        {
            // Kestrel stops accepting, lets requests (and upgraded connections) finish until drain, then aborts them.
            try { await app.StopAsync(drain).ConfigureAwait(false); }
            catch (OperationCanceledException) { }
            await app.DisposeAsync().ConfigureAwait(false);
        }
        _handler?.State().DisposeGroups();
    }

    public async ValueTask DisposeAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.Zero);
        await StopAsync(cts.Token).ConfigureAwait(false);
    }
}

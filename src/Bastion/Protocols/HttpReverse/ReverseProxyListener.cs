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
    readonly Admission _admission = new(ctx);
    WebApplication? _app;
    ReverseHandler? _handler;
    bool _stopped;

    public string Name => _ctx.Name;
    public ListenerType Type => _ctx.Type;
    public IPEndPoint? BoundEndPoint { get; private set; }
    public bool IsRunning => _app is not null && !_stopped;
    public int ActiveConnections => _admission.Active;

    /// <summary>For tests and the admin API: the upstream groups in force and their targets' health.</summary>
    public IReadOnlyDictionary<string, UpstreamGroup> Upstreams => _handler?.State().Groups ?? [];

    public async Task StartAsync(CancellationToken ct)
    {
        var cfg = _ctx.Config;
        var rt = _ctx.Runtime;
        var limits = cfg.Limits;
        var certs = cfg.Tls.IsEmpty ? null : new ServerCertificates(rt.Config, cfg.Tls);
        var ep = ListenSockets.EndPoint(cfg.Listen);

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

    /// <summary>
    /// The shared admission on Kestrel's raw transport, before TLS and HTTP: limit, registry, the PROXY header (read
    /// off Kestrel's input pipe; setting c.RemoteEndPoint makes Kestrel report the client it names to every request),
    /// and the closed line when the connection ends.
    /// </summary>
    async Task OnConnectionAsync(ConnectionContext c, ConnectionDelegate next)
    {
        if (c.RemoteEndPoint is not IPEndPoint peer) { await next(c).ConfigureAwait(false); return; }
        if (!_admission.TryEnter())
        {
            _admission.RefuseOverLimit(peer.ToString());
            c.Abort();
            return;
        }
        var conn = _admission.Register(Transport.FromPipe(c.Transport), peer, c.LocalEndPoint as IPEndPoint);
        try
        {
            if (!await _admission.IdentifyAsync(conn).ConfigureAwait(false))
            {
                c.Abort();
                return;
            }
            if (conn.ProxyHeader?.Source is { } src) c.RemoteEndPoint = src;
            c.Features.Set(conn);
            using var reg = conn.Aborted.Register(static s => ((ConnectionContext)s!).Abort(), c);
            await next(c).ConfigureAwait(false);
        }
        finally
        {
            _admission.Release(conn);
        }
    }

    public async Task StopAsync(CancellationToken drain)
    {
        if (_stopped) return;
        _stopped = true;
        _admission.StopAccepting();
        if (_app is { } app)
        {
            // Kestrel stops accepting, lets requests (and upgraded connections) finish until drain, then aborts them.
            try { await app.StopAsync(drain).ConfigureAwait(false); }
            catch (OperationCanceledException) { }
            await app.DisposeAsync().ConfigureAwait(false);
        }
        using (var none = new CancellationTokenSource(TimeSpan.Zero)) await _admission.DrainAsync(none.Token).ConfigureAwait(false);
        _handler?.State().DisposeGroups();
    }

    public async ValueTask DisposeAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.Zero);
        await StopAsync(cts.Token).ConfigureAwait(false);
    }
}

using System.Net.Security;
using Bastion.Gateway;
using Bastion.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Yarp.ReverseProxy.Forwarder;

namespace Bastion.Protocols.Http.Inspection;

/// <summary>
/// HTTP/2 inside inspected tunnels: one socketless Kestrel per forward-proxy listener, started with the first h2
/// tunnel. Kestrel speaks HTTP/2 to the client over the decrypted stream; <see cref="InspectedHttp2Handler"/> asks
/// the same policy as the HTTP/1.1 engine and forwards through YARP over the tunnel's own h2 origin connection.
/// </summary>
sealed class InspectedHttp2(ListenerContext ctx) : IAsyncDisposable
{
    readonly TunnelConnections _connections = new();
    readonly SemaphoreSlim _starting = new(1, 1);
    WebApplication? _app;

    public async Task ServeAsync(SslStream client, InspectedOrigin target, ClientConnection conn)
    {
        await EnsureStartedAsync().ConfigureAwait(false);
        await _connections.ServeAsync(new TunnelConnection(client, target, conn)).ConfigureAwait(false);
    }

    async Task EnsureStartedAsync()
    {
        if (Volatile.Read(ref _app) is not null) return;
        await _starting.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_app is not null) return;
            var limits = ctx.Config.Limits;
            var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions { ApplicationName = "bastion" });
            builder.Services.AddLogging(b => b.ClearProviders());
            builder.Services.AddHttpForwarder();
            builder.Services.AddSingleton<IConnectionListenerFactory>(_connections);
            builder.WebHost.UseKestrelCore();
            builder.WebHost.ConfigureKestrel(k =>
            {
                k.AddServerHeader = false;
                // The client's :scheme is https (its TLS is the tunnel's), on a connection Kestrel sees as plain.
                k.AllowAlternateSchemes = true;
                k.Limits.MaxRequestBodySize = limits.MaxRequestBody > 0 ? limits.MaxRequestBody : null;
                k.Limits.MaxRequestHeadersTotalSize = limits.MaxHeaderSize;
                k.Limits.Http2.MaxRequestHeaderFieldSize = Math.Max(4096, limits.MaxHeaderSize);
                k.Limits.KeepAliveTimeout = limits.IdleTimeout;
                k.Limits.RequestHeadersTimeout = limits.HeaderTimeout;
                // TLS is already done (the tunnel's); Kestrel sees h2 with prior knowledge, as ALPN agreed.
                k.Listen(new TunnelEndPoint(ctx.Name), lo => lo.Protocols = HttpProtocols.Http2);
            });
            var app = builder.Build();
            var handler = new InspectedHttp2Handler(ctx, app.Services.GetRequiredService<IHttpForwarder>());
            app.Run(handler.HandleAsync);
            await app.StartAsync().ConfigureAwait(false);
            Volatile.Write(ref _app, app);
        }
        finally { _starting.Release(); }
    }

    public async ValueTask DisposeAsync()
    {
        _connections.Complete();
        if (_app is { } app)
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(1));
            try { await app.StopAsync(cts.Token).ConfigureAwait(false); }
            catch (OperationCanceledException) { }
            await app.DisposeAsync().ConfigureAwait(false);
        }
    }
}

using System.Net.Security;
using System.Net.Sockets;
using Bastion.Gateway;
using Bastion.Hosting;
using Bastion.Protocols.Http.Engine;
using Microsoft.Extensions.DependencyInjection;
using Yarp.ReverseProxy.Forwarder;

namespace Bastion.Protocols.Http.Inspection;

/// <summary>
/// HTTP/2 inside inspected tunnels: the socketless Kestrel (<see cref="Http2Handoff"/>) the reverse proxy uses too,
/// one per forward-proxy listener, started with the first h2 tunnel. Kestrel speaks HTTP/2 to the client over the
/// decrypted stream; <see cref="InspectedHttp2Handler"/> asks the same policy as the HTTP/1.1 engine and forwards
/// through YARP to the origin.
/// </summary>
sealed class InspectedHttp2(ListenerContext ctx) : IAsyncDisposable
{
    readonly SemaphoreSlim _starting = new(1, 1);
    Http2Handoff? _handoff;

    public async Task ServeAsync(SslStream client, Socket socket, InspectedOrigin target, ClientConnection conn)
    {
        var h = Volatile.Read(ref _handoff) ?? await StartAsync().ConfigureAwait(false);
        await h.ServeAsync(client, socket, conn, target).ConfigureAwait(false);
    }

    async Task<Http2Handoff> StartAsync()
    {
        await _starting.WaitAsync().ConfigureAwait(false);
        try
        {
            if (_handoff is { } h) return h;
            var started = await Http2Handoff.StartAsync(ctx, ctx.Config.Limits,
                sp => new InspectedHttp2Handler(ctx, sp.GetRequiredService<IHttpForwarder>()).HandleAsync, CancellationToken.None).ConfigureAwait(false);
            Volatile.Write(ref _handoff, started);
            return started;
        }
        finally { _starting.Release(); }
    }

    public ValueTask DisposeAsync() => _handoff?.DisposeAsync() ?? ValueTask.CompletedTask;
}

using Bastion.Gateway.Tls;
using Bastion.Hosting;

namespace Bastion.Protocols.Http.Inspection;

/// <summary>
/// A forward-proxy listener's inspection machinery, which outlives reloads: the minted-certificate cache (renewed
/// when the CA changes) and the HTTP/2 front for tunnels that speak h2 inside.
/// </summary>
sealed class ForwardInspection(ListenerContext ctx) : IAsyncDisposable
{
    InspectedHttp2? _http2;

    public TlsInspector Tls { get; } = new(t => ctx.Metrics.TlsMinted(ctx.Name, t));

    /// <summary>Whether h2 is offered inside inspected tunnels (when both the client and the origin offer it).</summary>
    public bool Http2Enabled => true;

    public InspectedHttp2 Http2
    {
        get
        {
            if (Volatile.Read(ref _http2) is { } h) return h;
            var fresh = new InspectedHttp2(ctx);
            return Interlocked.CompareExchange(ref _http2, fresh, null) ?? fresh;
        }
    }

    /// <summary>Counts a tunnel by what became of it: inspected, spliced, refused, client_refused.</summary>
    public void Counted(ListenerContext ctx, string mode) => ctx.Metrics.TlsTunnel(ctx.Name, mode);

    public ValueTask DisposeAsync() => _http2?.DisposeAsync() ?? ValueTask.CompletedTask;
}

using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Hosting;
using Bastion.Policy;

namespace Bastion.Protocols.Tcp;

/// <summary>
/// The plain TCP gateway (SPEC 3, tcp; HAProxy's mode tcp, FWTK's plug-gw): each connection is put to the policy
/// (source, user from a trusted PROXY header, port, time), then relayed to the fixed upstream or to a target of
/// an upstream group chosen by its `balance:` strategy. Optionally the upstream first gets a PROXY v1/v2 header
/// naming the real client.
/// </summary>
public sealed class TcpRelayListener(ListenerContext ctx) : StreamListener(ctx)
{
    readonly StreamUpstreamsSlot _upstreams = new();

    /// <summary>decide → connect (failover over the group) → PROXY header → relay. The closed line is the connection's record.</summary>
    protected override async Task HandleAsync(ClientConnection conn)
    {
        var cfg = Ctx.Config;
        var record = conn.Record;
        record.Request = $"TCP {cfg.Upstream}";
        var upstreams = _upstreams.For(cfg, Ctx.Runtime.Config);

        if (!Decide(conn, cfg, record.Request))
        {
            conn.Transport.Abort();
            return;
        }

        var (upstream, target, error) = await upstreams.ConnectAsync(cfg.Limits.ConnectTimeout, conn.Aborted).ConfigureAwait(false);
        if (upstream is null)
        {
            record.Reason = error;
            return;
        }
        await using (upstream)
        {
            target!.Begin();
            try
            {
                conn.Target = record.Upstream = target.ToString();
                record.Request = $"TCP {target}";
                if (cfg.ProxyProtocol != ProxyProtocolVersion.None)
                {
                    var dest = conn.ProxyHeader?.Destination ?? conn.Local!;
                    await upstream.SendAsync(ProxyProtocol.Build(cfg.ProxyProtocol, conn.Client, dest), conn.Aborted).ConfigureAwait(false);
                }
                var result = await StreamRelay.RunAsync(conn.Transport, upstream, cfg.Limits.IdleTimeout, record.Counter, conn.Aborted)
                    .ConfigureAwait(false);
                if (result.IdleTimedOut) record.Reason = "idle timeout";
            }
            finally { target.End(); }
        }
    }

    /// <summary>The policy on the whole connection, logged as its request line; the closed line carries the reason of a denial.</summary>
    bool Decide(ClientConnection conn, ListenerConfig cfg, string request)
    {
        var attrs = new RequestAttributes
        {
            Source = conn.Client.Address,
            User = conn.User,
            Port = StreamUpstreams.PolicyPort(cfg, Ctx.Runtime.Config, (conn.ProxyHeader?.Destination ?? conn.Local!).Port),
        };
        var d = Ctx.Policy.Evaluate(attrs);
        var decision = Ctx.Open(conn, ExchangeKinds.Request, conn.Id);
        decision.Request = request;
        decision.Decide(d).Close();
        if (!d.Allowed) conn.Record.Reason = d.Reason;
        return d.Allowed;
    }

    public override async Task StopAsync(CancellationToken drain)
    {
        await base.StopAsync(drain).ConfigureAwait(false);
        _upstreams.Dispose();
    }
}

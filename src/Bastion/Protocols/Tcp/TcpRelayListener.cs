using System.Collections.Immutable;
using System.Net;
using System.Net.Sockets;
using Bastion.Configuration;
using Bastion.Hosting;
using Bastion.Policy;
using Bastion.Gateway;

namespace Bastion.Protocols.Tcp;

/// <summary>
/// The plain TCP gateway (SPEC 3, tcp; HAProxy's mode tcp, FWTK's plug-gw): each connection is put to the policy
/// (source, user from a trusted PROXY header, port, time), then relayed to the fixed upstream or to a target of
/// an upstream group (round-robin; a target that refuses is set aside for a while). Optionally the upstream
/// first gets a PROXY v1/v2 header naming the real client.
/// </summary>
public sealed class TcpRelayListener(ListenerContext ctx) : StreamListener(ctx)
{
    Balancer? _balancer;

    protected override async Task HandleAsync(ClientConnection conn)
    {
        var cfg = Ctx.Config;
        string? reason = null;
        long bytesIn = 0, bytesOut = 0;
        var request = $"TCP {cfg.Upstream}";
        try
        {
            var balancer = BalancerFor(cfg);
            var attrs = new RequestAttributes
            {
                Source = conn.Client.Address,
                User = conn.User,
                // A fixed upstream's port is the target; a group has many, so the port the client dialled stands for it.
                Port = balancer.Fixed ? balancer.Targets[0].Port : (conn.ProxyHeader?.Destination ?? conn.Local!).Port,
            };
            var d = Ctx.Policy.Evaluate(attrs);
            Ctx.RecordDecision(conn, request, d.Verdict, d.RuleName, d.Reason);
            if (!d.Allowed)
            {
                reason = d.Reason;
                try { conn.Socket!.Close(0); } catch (ObjectDisposedException) { }
                return;
            }
            var (upstream, target, error) = await balancer.ConnectAsync(cfg.Limits.ConnectTimeout, conn.Aborted).ConfigureAwait(false);
            if (upstream is null)
            {
                reason = error;
                return;
            }
            using (upstream)
            {
                conn.Target = target!.ToString();
                request = $"TCP {target}";
                if (cfg.ProxyProtocol != ProxyProtocolVersion.None)
                {
                    var dest = conn.ProxyHeader?.Destination ?? conn.Local!;
                    var header = ProxyProtocol.Build(cfg.ProxyProtocol, conn.Client, dest);
                    await upstream.SendAsync(header, SocketFlags.None, conn.Aborted).ConfigureAwait(false);
                }
                var result = await SocketRelay.RunAsync(conn.Socket!, upstream, cfg.Limits.IdleTimeout, (i, o) =>
                {
                    if (i != 0) Interlocked.Add(ref conn.BytesIn, i);
                    if (o != 0) Interlocked.Add(ref conn.BytesOut, o);
                    Ctx.Metrics.Bytes(Name, i, o);
                }, conn.Aborted).ConfigureAwait(false);
                bytesIn = result.BytesFromClient;
                bytesOut = result.BytesToClient;
                if (result.IdleTimedOut) reason = "idle timeout";
            }
        }
        finally
        {
            Ctx.RecordClosed(conn, request, 0, reason, bytesIn, bytesOut);
        }
    }

    /// <summary>The balancer for the configuration in force; kept across reloads while the targets stay the same.</summary>
    Balancer BalancerFor(ListenerConfig cfg)
    {
        ImmutableArray<string> targets;
        bool isFixed = false;
        TimeSpan downFor = TimeSpan.FromSeconds(10);
        if (cfg.Upstream is { } u && Ctx.Runtime.Config.Upstreams.TryGetValue(u, out var group))
        {
            targets = group.Targets;
            if (group.Health is { } h) downFor = h.Interval;
        }
        else
        {
            targets = [cfg.Upstream ?? ""];
            isFixed = true;
        }
        var b = Volatile.Read(ref _balancer);
        if (b is not null && b.Spec.SequenceEqual(targets)) return b;
        b = new Balancer(targets, isFixed, downFor);
        Volatile.Write(ref _balancer, b);
        return b;
    }

    /// <summary>`host:port`, `tcp://host:port` (or an http URL's host and port) as a target.</summary>
    public static HostPort? ParseTarget(string t)
    {
        if (t.StartsWith("tcp://", StringComparison.OrdinalIgnoreCase)) t = t[6..].TrimEnd('/');
        else if (Uri.TryCreate(t, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https")
            return new HostPort(uri.Host.Trim('[', ']'), uri.Port);
        return HostPort.TryParse(t, out var hp) ? hp : null;
    }

    /// <summary>Round-robin over the targets; one that fails to connect is tried last until its time-out ends.</summary>
    sealed class Balancer
    {
        public ImmutableArray<string> Spec { get; }
        public HostPort[] Targets { get; }
        public bool Fixed { get; }
        readonly long[] _downUntil;
        readonly long _downMs;
        int _next = -1;

        public Balancer(ImmutableArray<string> spec, bool isFixed, TimeSpan downFor)
        {
            Spec = spec;
            Fixed = isFixed;
            Targets = [.. spec.Select(ParseTarget).Where(t => t is not null).Select(t => t!)];
            _downUntil = new long[Targets.Length];
            _downMs = (long)downFor.TotalMilliseconds;
        }

        public async Task<(Socket? Socket, HostPort? Target, string? Error)> ConnectAsync(TimeSpan timeout, CancellationToken ct)
        {
            int n = Targets.Length;
            if (n == 0) return (null, null, "no usable upstream target");
            int start = (int)((uint)Interlocked.Increment(ref _next) % (uint)n);
            long now = Environment.TickCount64;
            // Healthy targets in round-robin order first, then those marked down (better a retry than a refusal).
            var order = new int[n];
            int k = 0;
            for (int i = 0; i < n; i++) if (Volatile.Read(ref _downUntil[(start + i) % n]) <= now) order[k++] = (start + i) % n;
            for (int i = 0; i < n; i++) if (Volatile.Read(ref _downUntil[(start + i) % n]) > now) order[k++] = (start + i) % n;
            string? error = null;
            foreach (var idx in order)
            {
                var t = Targets[idx];
                var (addrs, rerr) = await Connector.ResolveAsync(t.Host, timeout, ct).ConfigureAwait(false);
                if (rerr != SocketError.Success)
                {
                    error = $"upstream {t}: cannot resolve: {rerr}";
                    MarkDown(idx);
                    continue;
                }
                var r = await Connector.ConnectAsync(addrs, t.Port, timeout, ct).ConfigureAwait(false);
                if (r.Ok)
                {
                    Volatile.Write(ref _downUntil[idx], 0);
                    return (r.Socket, t, null);
                }
                error = $"upstream {t}: {r.Message ?? r.Error.ToString()}";
                MarkDown(idx);
            }
            return (null, null, error);
        }

        void MarkDown(int idx) => Volatile.Write(ref _downUntil[idx], Environment.TickCount64 + _downMs);
    }
}

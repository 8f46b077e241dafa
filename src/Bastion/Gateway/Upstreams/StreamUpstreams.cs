using Bastion.Configuration;

namespace Bastion.Gateway;

/// <summary>
/// The upstream of a listener that opens plain TCP connections (tcp, ftp): a fixed `host:port` or an `upstreams:`
/// group, as the shared <see cref="UpstreamSet"/> (the group's `balance:` strategy; a target that refuses sits out
/// for the group's `health.interval`, 10 s without one; with `health:` a TCP connect is the active check).
/// </summary>
public sealed class StreamUpstreams : IDisposable
{
    static readonly TimeSpan DefaultDownTime = TimeSpan.FromSeconds(10);

    public UpstreamSet Set { get; }
    /// <summary>A single `host:port` rather than a group.</summary>
    public bool Fixed { get; }
    public ListenerConfig Config { get; }

    StreamUpstreams(ListenerConfig cfg, UpstreamSet set, bool isFixed)
    {
        Config = cfg;
        Set = set;
        Fixed = isFixed;
    }

    public static StreamUpstreams Build(ListenerConfig cfg, BastionConfig root, StreamUpstreams? previous)
    {
        UpstreamConfig? group = null;
        IEnumerable<string> targets;
        bool isFixed = false;
        if (cfg.Upstream is { } u && root.Upstreams.TryGetValue(u, out var g))
        {
            group = g;
            targets = g.Targets;
        }
        else
        {
            targets = [cfg.Upstream ?? ""];
            isFixed = true;
        }
        var prefixes = targets.Select(t => ParseTarget(t)).OfType<HostPort>().Select(hp => $"tcp://{hp}").ToArray();
        if (previous is not null && previous.Fixed == isFixed && previous.Set.SameAs(group, prefixes)) return new StreamUpstreams(cfg, previous.Set, isFixed);
        var set = new UpstreamSet(cfg.Upstream ?? "", group, prefixes, group?.Health?.Interval ?? DefaultDownTime, ProbeAsync);
        return new StreamUpstreams(cfg, set, isFixed);
    }

    /// <summary>`host:port`, `tcp://host:port` (or an http URL's host and port) as a target.</summary>
    public static HostPort? ParseTarget(string t)
    {
        if (t.StartsWith("tcp://", StringComparison.OrdinalIgnoreCase)) t = t[6..].TrimEnd('/');
        else if (Uri.TryCreate(t, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https")
            return new HostPort(uri.Host.Trim('[', ']'), uri.Port);
        return HostPort.TryParse(t, out var hp) ? hp : null;
    }

    /// <summary>
    /// The `port` the policy sees: a fixed upstream's port is the target; a group has many, so the port the client
    /// dialled stands for it. The same for the live session and for `explain`.
    /// </summary>
    public static int PolicyPort(ListenerConfig cfg, BastionConfig root, int dialledPort) =>
        cfg.Upstream is { } u && !root.Upstreams.ContainsKey(u) && ParseTarget(u) is { } hp ? hp.Port : dialledPort;

    /// <summary>Connects to the targets in failover order; the first that answers wins.</summary>
    public async Task<(Transport? Transport, UpstreamTarget? Target, string? Error)> ConnectAsync(TimeSpan timeout, CancellationToken ct)
    {
        if (Set.Targets.Length == 0) return (null, null, "no usable upstream target");
        string? error = null;
        foreach (var t in Set.FailoverOrder())
        {
            var r = await Transport.ConnectAsync(t.Host, t.Port, timeout, ct).ConfigureAwait(false);
            if (r.Ok)
            {
                t.Connected();
                return (r.Transport, t, null);
            }
            error = $"upstream {t}: {r.Message ?? r.Error.ToString()}";
            Set.ConnectFailed(t);
        }
        return (null, null, error);
    }

    static async Task<bool> ProbeAsync(UpstreamTarget t, HealthConfig h, CancellationToken ct)
    {
        var r = await Transport.ConnectAsync(t.Host, t.Port, h.Timeout, ct).ConfigureAwait(false);
        if (r.Transport is { } up) await up.DisposeAsync().ConfigureAwait(false);
        return r.Ok;
    }

    public void Dispose() => Set.Dispose();
}

/// <summary>A listener's <see cref="StreamUpstreams"/> for the configuration in force, kept across reloads (with their health) while they stay the same.</summary>
public sealed class StreamUpstreamsSlot : IDisposable
{
    StreamUpstreams? _upstreams;
    readonly object _rebuild = new();

    public StreamUpstreams For(ListenerConfig cfg, BastionConfig root)
    {
        var u = Volatile.Read(ref _upstreams);
        if (u is not null && ReferenceEquals(u.Config, cfg)) return u;
        lock (_rebuild)
        {
            u = _upstreams;
            if (u is not null && ReferenceEquals(u.Config, cfg)) return u;
            var next = StreamUpstreams.Build(cfg, root, u);
            if (u is not null && !ReferenceEquals(next.Set, u.Set)) u.Dispose();
            Volatile.Write(ref _upstreams, next);
            return next;
        }
    }

    public void Dispose() => _upstreams?.Dispose();
}

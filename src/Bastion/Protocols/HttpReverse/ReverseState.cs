using Bastion.Configuration;
using Bastion.Hosting;
using Bastion.Policy;
using Yarp.ReverseProxy.Forwarder;

namespace Bastion.Protocols.HttpReverse;

/// <summary>
/// Everything a request needs, compiled from one configuration snapshot: routes, upstream groups, policy, limits.
/// Reload builds a new one beside it; a request keeps the one it started with, so nothing in flight is cut.
/// Upstream groups whose definition did not change are carried over with their health state and connection pool.
/// </summary>
sealed record ReverseState
{
    public required Runtime Runtime { get; init; }
    public required ListenerConfig Config { get; init; }
    public required CompiledPolicy Policy { get; init; }
    /// <summary>Some rule asks about `url`: only then is the whole URL built for each request.</summary>
    public required bool NeedsUrl { get; init; }
    public required RouteTable Routes { get; init; }
    public required Dictionary<string, UpstreamGroup> Groups { get; init; }
    public required CidrSet TrustedProxies { get; init; }
    public RateLimiter? Rate { get; init; }
    /// <summary>YARP's settings for the HTTP/2 path, made on its first request (a plain listener never loads YARP).</summary>
    public ForwarderRequestConfig RequestConfig => _requestConfig ??= new ForwarderRequestConfig { ActivityTimeout = Config.Limits.ResponseTimeout };
    /// <summary>Upgraded connections (WebSockets) live as long as they are not idle past idle_timeout.</summary>
    public ForwarderRequestConfig UpgradeConfig => _upgradeConfig ??= new ForwarderRequestConfig { ActivityTimeout = Config.Limits.IdleTimeout };
    ForwarderRequestConfig? _requestConfig, _upgradeConfig;

    public static ReverseState Build(ListenerContext ctx, Runtime rt, ReverseState? previous)
    {
        var cfg = rt.Listener(ctx.Name) ?? ctx.Config;
        var root = rt.Config;
        var limits = cfg.Limits;
        var groups = new Dictionary<string, UpstreamGroup>(StringComparer.Ordinal);
        UpstreamGroup Group(string name)
        {
            if (groups.TryGetValue(name, out var g)) return g;
            root.Upstreams.TryGetValue(name, out var ucfg);
            var targets = ucfg?.Targets.AsEnumerable() ?? [name];
            if (previous?.Groups.TryGetValue(name, out var old) == true && old.SameAs(ucfg, targets, limits.ConnectTimeout))
                g = old;
            else
                g = new UpstreamGroup(name, ucfg, targets, root, limits.ConnectTimeout);
            g.Set.Meter(ctx.Metrics.Upstreams, ctx.Name);
            groups[name] = g;
            return g;
        }
        var errors = new List<string>();
        var routes = RouteTable.Build(cfg.Name, cfg.Routes, Group, errors, cfg.PathIgnoreCase);
        foreach (var e in errors) Console.Error.WriteLine($"bastion: listener {cfg.Name}: {e}");
        if (previous is not null)
            foreach (var (name, g) in previous.Groups)
                if (!groups.TryGetValue(name, out var kept) || !ReferenceEquals(kept, g)) g.Dispose();

        var policy = rt.PolicyFor(cfg);
        RateLimiter? rate = null;
        if (limits.Rate > 0)
            rate = previous?.Rate is { } pr && pr.Rate == limits.Rate && pr.Burst == limits.Burst
                ? pr : new RateLimiter(limits.Rate, Math.Max(1, limits.Burst));

        return new ReverseState
        {
            Runtime = rt,
            Config = cfg,
            Policy = policy,
            NeedsUrl = policy.AllRules.Any(r => r.Conditions.Any(AsksUrl)),
            Routes = routes,
            Groups = groups,
            TrustedProxies = Trusted(cfg, rt),
            Rate = rate,
        };
    }

    static bool AsksUrl(Condition c) => c.Attribute == "url" || (c is NotCondition n && n.Inner.Any(AsksUrl));

    /// <summary>`trusted_proxies`: CIDRs, IPs or `@list`s.</summary>
    public static CidrSet Trusted(ListenerConfig cfg, Runtime rt)
    {
        var entries = new List<string>();
        foreach (var e in cfg.TrustedProxies)
        {
            if (e.StartsWith('@') && rt.Lists.Has(e[1..])) entries.AddRange(rt.Lists.Entries(e[1..]));
            else entries.Add(e);
        }
        return CidrSet.Build(entries);
    }

    public void DisposeGroups()
    {
        foreach (var g in Groups.Values) g.Dispose();
    }
}

/// <summary>The state for the configuration in force, shared by the HTTP/1.1 engine and the HTTP/2 (Kestrel) path.</summary>
sealed class ReverseStates(ListenerContext ctx)
{
    readonly object _rebuild = new();
    volatile ReverseState _state = ReverseState.Build(ctx, ctx.Runtime, null);

    /// <summary>Rebuilt once when reload swapped the snapshot; requests keep the one they started with.</summary>
    public ReverseState Current()
    {
        var st = _state;
        var rt = ctx.Runtime;
        if (ReferenceEquals(st.Runtime, rt)) return st;
        lock (_rebuild)
        {
            st = _state;
            if (ReferenceEquals(st.Runtime, rt)) return st;
            try { st = ReverseState.Build(ctx, rt, st); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or System.Security.Cryptography.CryptographicException)
            {
                // A file the new configuration names cannot be read: keep serving with what we have.
                Console.Error.WriteLine($"bastion: listener {ctx.Name}: reload kept the previous routes: {e.Message}");
                st = st with { Runtime = rt };
            }
            _state = st;
            return st;
        }
    }
}

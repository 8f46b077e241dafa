namespace Bastion.Gateway;

/// <summary>A load-balancing strategy (`balance:`): picks one available target, or null when none is.</summary>
public interface IBalancer
{
    string Name { get; }
    UpstreamTarget? Pick(UpstreamTarget[] targets);
}

/// <summary>The strategies by their `balance:` names.</summary>
public static class Balancers
{
    public static readonly string[] Names = ["round-robin", "least-requests", "power-of-two", "random"];

    public static IBalancer Create(string? name) => name switch
    {
        "least-requests" => new LeastRequestsBalancer(),
        "power-of-two" => new PowerOfTwoBalancer(),
        "random" => new RandomBalancer(),
        _ => new RoundRobinBalancer(),
    };

    /// <summary>A random available target (scanning on from a random start), or null.</summary>
    internal static UpstreamTarget? RandomAvailable(UpstreamTarget[] t)
    {
        int start = Random.Shared.Next(t.Length);
        for (int i = 0; i < t.Length; i++)
        {
            var c = t[(start + i) % t.Length];
            if (c.Available) return c;
        }
        return null;
    }
}

/// <summary>Each target in turn, skipping those out.</summary>
public sealed class RoundRobinBalancer : IBalancer
{
    int _next = -1;
    public string Name => "round-robin";

    public UpstreamTarget? Pick(UpstreamTarget[] t)
    {
        int start = (int)((uint)Interlocked.Increment(ref _next) % (uint)t.Length);
        for (int i = 0; i < t.Length; i++)
        {
            var c = t[(start + i) % t.Length];
            if (c.Available) return c;
        }
        return null;
    }
}

/// <summary>The target with the fewest requests in flight; ties spread by a rotating start.</summary>
public sealed class LeastRequestsBalancer : IBalancer
{
    int _next = -1;
    public string Name => "least-requests";

    public UpstreamTarget? Pick(UpstreamTarget[] t)
    {
        UpstreamTarget? best = null;
        int start = (int)((uint)Interlocked.Increment(ref _next) % (uint)t.Length);
        for (int i = 0; i < t.Length; i++)
        {
            var c = t[(start + i) % t.Length];
            if (c.Available && (best is null || c.InFlight < best.InFlight)) best = c;
        }
        return best;
    }
}

/// <summary>Two random targets, the less busy one wins (YARP's default).</summary>
public sealed class PowerOfTwoBalancer : IBalancer
{
    public string Name => "power-of-two";

    public UpstreamTarget? Pick(UpstreamTarget[] t)
    {
        var a = Balancers.RandomAvailable(t);
        var b = Balancers.RandomAvailable(t);
        if (a is null) return b;
        if (b is null) return a;
        return b.InFlight < a.InFlight ? b : a;
    }
}

/// <summary>Any available target at random.</summary>
public sealed class RandomBalancer : IBalancer
{
    public string Name => "random";

    public UpstreamTarget? Pick(UpstreamTarget[] t) => Balancers.RandomAvailable(t);
}

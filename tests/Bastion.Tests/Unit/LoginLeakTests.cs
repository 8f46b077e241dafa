using System.Net;
using Bastion.Identity;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Unit;

/// <summary>Issue 9 item 5: logins leak nothing (no user enumeration, no cross-client slowdown, no silent truncation).</summary>
public class LoginLeakTests
{
    static string Bcrypt(string password, int cost = 4) => BCrypt.Net.BCrypt.HashPassword(password, BCrypt.Net.BCrypt.GenerateSalt(cost, 'b'));

    [Fact]
    public async Task Unknown_users_cost_one_hash_of_the_same_kind_as_known_ones()
    {
        var store = new IdentityStore(new() { ["alice"] = Bcrypt("right", cost: 6) });
        Assert.Equal(LoginResult.Bad, await store.LoginAsync("alice", "wrong", IPAddress.Loopback));
        Assert.Equal(1, store.HashChecks);
        Assert.Equal(LoginResult.Bad, await store.LoginAsync("nobody", "wrong", IPAddress.Loopback));
        Assert.Equal(2, store.HashChecks);

        var dummy = Htpasswd.DummyLike(Bcrypt("x", cost: 6));
        Assert.True(Htpasswd.IsWellFormed(dummy), dummy);
        Assert.StartsWith("$2b$06$", dummy);
        Assert.False(Htpasswd.Verify("", dummy));
        var sha = Htpasswd.DummyLike("{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=");
        Assert.True(Htpasswd.IsWellFormed(sha));
        Assert.False(Htpasswd.Verify("secret", sha));
    }

    [Fact]
    public async Task Failed_logins_are_throttled_per_client_without_slowing_others()
    {
        // The attacked account's hash is slow (cost 10), the real user's fast (cost 4): the real login then takes a
        // fraction of one attacker check, so what it measures is queueing, not how a loaded machine schedules.
        var store = new IdentityStore(new() { ["alice"] = Bcrypt("right", cost: 10), ["bob"] = Bcrypt("bobs") });
        var attacker = IPAddress.Parse("10.0.0.66");
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var attempts = Enumerable.Range(0, 40).Select(i => store.LoginAsync("alice", $"guess{i}", attacker).AsTask()).ToList();
        // A real user elsewhere logs in (uncached) while the flood runs: at most the attacker's one check in flight
        // is ahead of it, never the queue of forty.
        long checksBefore = store.HashChecks;
        var real = await store.LoginAsync("bob", "bobs", IPAddress.Parse("10.0.0.7"));
        long during = store.HashChecks - checksBefore;
        Assert.Equal(LoginResult.Ok, real);
        // Queued behind the flood it would wait for the whole burst's checks; a loaded machine may let a few of the
        // attacker's serialised checks finish meanwhile, so the bound is half the burst.
        Assert.True(during <= LoginThrottle.Burst / 2 + 1, $"{during} password checks ran while the real login waited (its own included)");

        var results = await Task.WhenAll(attempts);
        // One more guess is judged for every second the flood took (the bucket refills); none past that.
        int refilled = (int)(clock.Elapsed / LoginThrottle.RefillEvery) + 1;
        int bad = results.Count(r => r == LoginResult.Bad), throttled = results.Count(r => r == LoginResult.Throttled);
        Assert.Equal(40, bad + throttled);
        // Ten failures (plus what refilled meanwhile), then refused without hashing.
        Assert.InRange(bad, LoginThrottle.Burst, LoginThrottle.Burst + refilled);
        Assert.True(store.HashChecks <= bad + 1, $"{store.HashChecks} hashes for {bad} judged guesses");
        // Even the right password is refused now from that address (no oracle), but not from another one.
        Assert.Equal(LoginResult.Throttled, await store.LoginAsync("alice", "right", attacker));
        Assert.Equal(LoginResult.Ok, await store.LoginAsync("alice", "right", IPAddress.Parse("10.0.0.8")));
        Assert.Equal(LoginResult.Bad, await store.LoginAsync("alice", "nope", IPAddress.Parse("10.0.0.9")));
    }

    [Fact]
    public void Bcrypt_passwords_past_72_bytes_are_refused()
    {
        var seventyTwo = new string('p', 72);
        var hash = Bcrypt(seventyTwo);
        Assert.True(Htpasswd.Verify(seventyTwo, hash));
        // bcrypt alone would say yes: it reads 72 bytes.
        Assert.True(BCrypt.Net.BCrypt.Verify(seventyTwo + "tail", hash));
        Assert.False(Htpasswd.Verify(seventyTwo + "tail", hash));
        Assert.Null(Htpasswd.PasswordProblem(seventyTwo));
        Assert.Contains("72", Htpasswd.PasswordProblem(seventyTwo + "x"));
        Assert.NotNull(Htpasswd.PasswordProblem(new string('é', 37)));
    }

    [Fact]
    public async Task Passwd_refuses_a_password_bcrypt_would_truncate()
    {
        var file = Path.Combine(Scratch.NewDir("pw"), "users");
        var r = await Proc.BastionAsync(["passwd", file, "alice"], stdin: new string('x', 73) + "\n");
        Assert.Equal(2, r.ExitCode);
        Assert.Contains("72 bytes", r.Stderr);
        Assert.False(File.Exists(file));
        var ok = await Proc.BastionAsync(["passwd", file, "alice"], stdin: new string('x', 72) + "\n");
        Assert.Equal(0, ok.ExitCode);
        Assert.StartsWith("alice:$2", File.ReadAllText(file));
    }
}

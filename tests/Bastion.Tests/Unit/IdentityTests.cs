using System.Security.Cryptography;
using System.Text;
using Bastion.Identity;
using Bastion.Tests.Infrastructure;

namespace Bastion.Tests.Unit;

public class IdentityTests
{
    static string Bcrypt(string password, char rev, int cost = 4) =>
        BCrypt.Net.BCrypt.HashPassword(password, BCrypt.Net.BCrypt.GenerateSalt(cost, rev));

    static string Sha(string password) => "{SHA}" + Convert.ToBase64String(SHA1.HashData(Encoding.UTF8.GetBytes(password)));

    [Fact]
    public void Htpasswd_reads_bcrypt_2a_2b_2y_and_sha()
    {
        var a = Bcrypt("pa", 'a');
        var b = Bcrypt("pb", 'b');
        var y = Bcrypt("py", 'y');
        Assert.StartsWith("$2a$", a);
        Assert.StartsWith("$2b$", b);
        Assert.StartsWith("$2y$", y);
        var dir = Scratch.NewDir("id");
        var path = Path.Combine(dir, "users");
        // A line as Apache's `htpasswd -s` writes it (password "secret").
        File.WriteAllText(path, $"# users\nalice:{a}\nbob:{b}\ncarol:{y}\r\ndan:{Sha("pd")}\nerin:{{SHA}}5en6G6MezRroT3XKqkdPOmY/BfQ=\n\n");
        var problems = new List<string>();
        var users = Htpasswd.Read(path, problems);
        Assert.Empty(problems);
        Assert.Equal(5, users.Count);
        Assert.True(Htpasswd.Verify("pa", users["alice"]));
        Assert.True(Htpasswd.Verify("pb", users["bob"]));
        Assert.True(Htpasswd.Verify("py", users["carol"]));
        Assert.True(Htpasswd.Verify("pd", users["dan"]));
        Assert.True(Htpasswd.Verify("secret", users["erin"]));
        Assert.False(Htpasswd.Verify("pb", users["alice"]));
        Assert.False(Htpasswd.Verify("PD", users["dan"]));
        Assert.False(Htpasswd.Verify("", users["carol"]));
    }

    [Fact]
    public void Verify_never_throws_on_a_damaged_hash()
    {
        Assert.False(Htpasswd.Verify("x", "$2y$10$short"));
        Assert.False(Htpasswd.Verify("x", "{SHA}not base64!"));
        Assert.False(Htpasswd.IsWellFormed("$2y$10$short"));
        Assert.True(Htpasswd.IsWellFormed(Bcrypt("x", 'y')));
    }

    [Fact]
    public void Upsert_adds_and_replaces_keeping_other_lines()
    {
        var path = Path.Combine(Scratch.NewDir("id"), "users");
        File.WriteAllText(path, "# keep me\nalice:{SHA}x\nalicia:{SHA}y\n");
        Htpasswd.Upsert(path, "alice", "{SHA}new");
        Htpasswd.Upsert(path, "bob", "{SHA}b");
        Assert.Equal(["# keep me", "alice:{SHA}new", "alicia:{SHA}y", "bob:{SHA}b"], File.ReadAllLines(path));
    }

    [Fact]
    public async Task Store_caches_good_and_bad_credentials()
    {
        var store = new IdentityStore(new Dictionary<string, string>
        {
            ["alice"] = Bcrypt("right", 'b', cost: 10),
        });
        Assert.True(await store.VerifyAsync("alice", "right"));
        Assert.Equal(1, store.HashChecks);

        // Counted, not timed (a wall-clock comparison failed on a loaded machine): no bcrypt after the first check.
        for (int i = 0; i < 1000; i++) Assert.True(await store.VerifyAsync("alice", "right"));
        Assert.Equal(1, store.HashChecks);

        // Wrong passwords are rejected, and the same wrong one is not re-hashed (negative cache).
        Assert.False(await store.VerifyAsync("alice", "wrong"));
        Assert.Equal(2, store.HashChecks);
        Assert.False(await store.VerifyAsync("alice", "wrong"));
        Assert.Equal(2, store.HashChecks);
        Assert.False(await store.VerifyAsync("alice", "Right"));
        Assert.Equal(3, store.HashChecks);
        // A cached success is not shared with another user name, nor an unknown one; an unknown user costs a
        // (dummy) hash like a wrong password does, so timing does not tell users apart.
        Assert.False(await store.VerifyAsync("bob", "right"));
        Assert.Equal(4, store.HashChecks);
        Assert.Equal(4, store.FailureCount);
    }

    [Theory]
    [InlineData("Basic YWxpY2U6czNjcjp0", true, "alice", "s3cr:t")]
    [InlineData("basic YWxpY2U6", true, "alice", "")]
    [InlineData("Basic !!!", false, "", "")]
    [InlineData("Bearer abc", false, "", "")]
    [InlineData("Basic bm9jb2xvbg==", false, "", "")]
    public void Basic_credentials(string header, bool ok, string user, string password)
    {
        Assert.Equal(ok, IdentityStore.TryParseBasic(header, out var u, out var p));
        if (ok) Assert.Equal((user, password), (u, p));
    }
}

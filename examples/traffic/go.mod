module traffic

go 1.19
